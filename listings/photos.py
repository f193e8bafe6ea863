"""Thumbnails of listing photos, for the chat's cards and the listing pages (Pillow)."""

import io
import logging
from pathlib import PurePath

from django.core.files.base import ContentFile
from PIL import Image, ImageOps

logger = logging.getLogger(__name__)

THUMBNAIL_SIZE = (480, 320)  # pixels, width x height: a card at 2x on a 240 px wide slot
MAX_PIXELS = 40_000_000  # a photo over this (e.g. 8,000 x 5,000) is refused, not decoded


def make_thumbnail(image) -> ContentFile:
    """A JPEG thumbnail of an uploaded photo, cropped to ``THUMBNAIL_SIZE``.

    Args:
        image: the photo's field file (or any file object Pillow can open).
    Returns:
        A ``ContentFile`` named ``<photo name>-thumb.jpg``, to assign to ``thumbnail``.
    Raises:
        ValueError: the file is not an image Pillow reads, or has over ``MAX_PIXELS`` pixels.
    """
    image.seek(0)
    try:
        with Image.open(image) as photo:
            if photo.width * photo.height > MAX_PIXELS:
                raise ValueError(f"the photo has over {MAX_PIXELS:,} pixels")
            photo = ImageOps.exif_transpose(photo).convert("RGB")
            thumb = ImageOps.fit(photo, THUMBNAIL_SIZE)
    except (OSError, Image.DecompressionBombError) as exc:
        raise ValueError(f"not a readable image: {exc}") from None
    out = io.BytesIO()
    thumb.save(out, "JPEG", quality=82)
    return ContentFile(out.getvalue(), name=f"{PurePath(image.name).stem}-thumb.jpg")
