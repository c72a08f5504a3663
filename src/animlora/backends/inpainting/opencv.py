"""OpenCV inpainting (Telea's fast marching or Navier-Stokes): no weights, CPU.

Good for thin or small holes and smooth backgrounds; large holes come out smeared, which
is what LaMa is for."""

from __future__ import annotations

import numpy as np

from animlora.backends.inpainting.base import Inpainter


class OpenCVInpainter(Inpainter):
    name = "opencv"

    def inpaint(self, image: np.ndarray, hole: np.ndarray) -> np.ndarray:
        import cv2

        flag = cv2.INPAINT_TELEA if self.settings.opencv_method == "telea" else cv2.INPAINT_NS
        bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        out = cv2.inpaint(bgr, hole.astype(np.uint8) * 255, self.settings.radius, flag)
        return cv2.cvtColor(out, cv2.COLOR_BGR2RGB)
