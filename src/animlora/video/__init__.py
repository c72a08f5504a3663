"""Video analysis: shot boundaries (:mod:`animlora.video.shots`) and per-frame measures
(:mod:`animlora.video.frame_measures`: sharpness, perceptual hash, black bars, an iris's black). Plain
algorithms on decoded frames (decoding is :mod:`animlora.io.video`); no catalog access."""
