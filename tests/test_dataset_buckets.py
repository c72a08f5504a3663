"""One bucket enumeration for the dataset stage and the trainer (sd-scripts' set, square included)."""

from __future__ import annotations

from animlora.buckets import bucket_for, enumerate_buckets
from animlora.curation.images import bucket_sizes
from animlora.training.inputs import make_buckets


def test_dataset_and_trainer_use_the_same_buckets():
    for args in ((512, 64, 256, 1024), (1024, 64, 256, 2048), (1000, 64, 384, 768)):
        res, step, lo, hi = args
        assert bucket_sizes(res, step, lo, hi) == make_buckets(res, lo, hi, step) == enumerate_buckets(*args)
    # sd-scripts always has the square bucket, even where the loop does not reach it
    assert (960, 960) in enumerate_buckets(1000, 64, 384, 1024)


def test_a_small_image_trains_at_its_own_size():
    buckets = enumerate_buckets(512, 64, 384, 768)
    assert bucket_for(640, 640, buckets, 64) == (512, 512)  # large enough: the nearest bucket
    assert bucket_for(320, 448, buckets, 64) == (320, 448)  # never enlarged to a 384+ bucket
    assert bucket_for(300, 200, buckets, 64) == (256, 192)
