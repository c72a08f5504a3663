"""Review server latency on a big project: 30k instances in 60 clusters (catalog rows and
130-d vectors, no images), every call through the real FastAPI app (TestClient).

    PYTHONPATH=src python benchmarks/review.py [--n 30000]

Prints the time of each call; the page needs /api/state plus one members page to show a
cluster, and every action answers with the new state.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def build(root: Path, n: int, clusters: int) -> None:
    import numpy as np

    from animlora.cli.project import create_project
    from animlora.workspace import Workspace

    create_project(root, "big", [], "3d")
    rng = np.random.default_rng(0)
    labels = rng.integers(-1, clusters, n)
    with Workspace(root).open_catalog() as catalog, catalog.transaction():
        catalog.conn.executemany(
            "INSERT INTO identity_instances VALUES (?, ?, ?, NULL, NULL, NULL, NULL)",
            [(f"i{k:06d}", f"h{k:06d}", f"filtered/character/i{k:06d}.png") for k in range(n)],
        )
        for c in range(clusters):
            catalog.execute("INSERT INTO clusters VALUES (?, ?, ?, NULL, NULL, 0)",
                            (f"c{c}", f"character_{c}", int((labels == c).sum())))
        catalog.execute("INSERT INTO clusters VALUES ('noise', 'noise', ?, NULL, NULL, 1)", (int((labels < 0).sum()),))
        catalog.conn.executemany(
            "INSERT INTO cluster_assignments VALUES (?, ?, ?)",
            [(f"i{k:06d}", "noise" if lab < 0 else f"c{lab}", float(rng.random())) for k, lab in enumerate(labels)],
        )
        # vectors of the color embedder's size, one per instance (the suggestions read them)
        vectors = rng.standard_normal((n, 130)).astype("<f4")
        catalog.conn.executemany(
            "INSERT INTO embeddings VALUES (?, 'color', ?, ?, 130)",
            [(f"i{k:06d}", f"h{k:06d}", vectors[k].tobytes()) for k in range(n)],
        )
        catalog.set_meta("identity.model", "color")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=30000)
    parser.add_argument("--clusters", type=int, default=60)
    args = parser.parse_args()
    from fastapi.testclient import TestClient

    from animlora.review.app import create_app
    from animlora.review.service import ReviewService
    from animlora.workspace import Workspace

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "big"
        build(root, args.n, args.clusters)
        t = time.perf_counter()
        service = ReviewService(Workspace(root))
        print(f"server start (replay + character_members): {time.perf_counter() - t:.3f} s")
        app = create_app(service)
        client = TestClient(app, base_url="http://127.0.0.1")
        # the printed URL carries the access token (it sets the cookie); the page holds the POST token
        page_html = client.get("/", params={"token": app.state.token}).text
        token = page_html.split('name="animlora-token" content="')[1].split('"')[0]
        headers = {"X-Animlora-Token": token}

        def timed(label, call):
            t = time.perf_counter()
            response = call()
            assert response.status_code == 200, response.text
            print(f"{label:40s} {1000 * (time.perf_counter() - t):8.1f} ms")
            return response.json()

        state = timed("GET /api/state", lambda: client.get("/api/state"))
        big = state["clusters"][0]["id"]
        page = timed("GET members (first page of 120)", lambda: client.get(f"/api/clusters/{big}/members"))
        timed("GET members (page 3)", lambda: client.get(f"/api/clusters/{big}/members?offset=240"))
        timed("GET suggestions (noise nearest it)", lambda: client.get(f"/api/clusters/{big}/suggestions"))
        timed("GET alike (cluster pairs), first", lambda: client.get("/api/alike"))
        timed("GET alike, again", lambda: client.get("/api/alike"))
        timed("POST rename", lambda: client.post("/api/rename", json={"cluster": big, "name": "luca"}, headers=headers))
        other = state["clusters"][1]["id"]
        timed("POST move 50 images", lambda: client.post(
            "/api/move", json={"instances": page["items"][:50], "to": other}, headers=headers))
        timed("POST merge two clusters", lambda: client.post(
            "/api/merge", json={"clusters": [big, state["clusters"][2]["id"]]}, headers=headers))
        timed("POST undo (replays the log)", lambda: client.post("/api/undo", headers=headers))
        timed("POST redo", lambda: client.post("/api/redo", headers=headers))


if __name__ == "__main__":
    main()
