"""Review in the browser: a FastAPI app over the catalog and one static page (vanilla JS)."""
