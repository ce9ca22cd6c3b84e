"""Image files of annotation folders: which file an annotation names, and its size.

Annotation tools record an image's name (VOC / LabelImg ``<filename>``, LabelMe
``imagePath``) and images get renamed or re-encoded afterwards (``a.jpg`` saved as
``a.png``). :class:`ImageFolder` finds the file: the one named when it exists, else the
only image file with the same name stem. :func:`image_size` reads an image's size from
its header, as displayed (EXIF orientation applied, as :class:`LoadImageFromFile` reads it).
"""

import os
import os.path as osp

from mmdet_like.datasets.errors import DatasetError

# the extensions Ultralytics and OpenCV read (compared lower-case)
IMAGE_EXTENSIONS = frozenset(
    (".bmp", ".dng", ".jpeg", ".jpg", ".jpe", ".mpo", ".png", ".tif", ".tiff", ".webp", ".pfm")
)
# EXIF orientations that turn the image by 90 or 270 degrees (width and height swap)
_TRANSPOSING_ORIENTATIONS = (5, 6, 7, 8)


def is_image_file(name):
    """Whether ``name`` has an image extension (any case)."""
    return osp.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def list_images(root, recursive=False):
    """Sorted paths relative to ``root`` of the image files in it (and below, ``recursive``)."""
    found = []
    if recursive:
        for folder, dirs, files in os.walk(root):
            dirs.sort()
            rel = osp.relpath(folder, root)
            found += [osp.normpath(osp.join(rel, f)) for f in files if is_image_file(f)]
    else:
        found = [f for f in os.listdir(root) if is_image_file(f)]
    return sorted(found)


class ImageFolder:
    """The image files directly in ``root``, to find the one an annotation names.

    ``root`` that does not exist holds no file.
    """

    def __init__(self, root):
        self.root = root
        self.names = list_images(root) if osp.isdir(root) else []
        self._by_stem = {}
        for name in self.names:
            self._by_stem.setdefault(osp.splitext(name)[0], []).append(name)

    def find(self, named=None, stem=None, source=""):
        """The file (relative to ``root``) for the name an annotation gives.

        ``named`` (``<filename>``, ``imagePath``; may be ``None``) is used when that file
        exists. Otherwise the one image file whose name stem equals ``named``'s stem, else
        ``stem`` (e.g. the annotation file's stem), is used. Returns ``(name, stand_in)``:
        ``stand_in`` is True when a name was given and the file is another one, and
        ``name`` is ``None`` when nothing fits. Two files of that stem (``a.jpg`` and
        ``a.png``) raise :class:`DatasetError` naming ``source``.
        """
        stems = []
        if named:
            named = named.replace("\\", "/")
            if osp.isfile(osp.join(self.root, named)):
                return named, False
            base = osp.basename(named)
            if base != named and osp.isfile(osp.join(self.root, base)):
                return base, True
            stems.append(osp.splitext(base)[0])
        if stem and stem not in stems:
            stems.append(stem)
        for s in stems:
            matches = self._by_stem.get(s, [])
            if len(matches) > 1:
                raise DatasetError(
                    f"{source}: names image {named or s!r}; it is not in {self.root}, and "
                    f"several files have its name stem: {matches}. Fix: keep one of them or "
                    "correct the name in the annotation."
                )
            if matches:
                return matches[0], bool(named)
        return None, False


def image_size(path):
    """``(width, height)`` of the image at ``path`` as displayed (EXIF orientation applied),
    read from its header (PIL); an image PIL cannot open is decoded with OpenCV. A missing
    or unreadable file raises :class:`DatasetError` naming it."""
    from PIL import Image

    if not osp.isfile(path):
        raise DatasetError(f"{path}: image not found. Fix: add the image or correct its name.")
    try:
        with Image.open(path) as img:
            width, height = img.size
            orientation = img.getexif().get(0x0112, 1)
    except (OSError, SyntaxError, ValueError) as exc:
        import cv2

        img = cv2.imread(path, cv2.IMREAD_COLOR)  # applies the EXIF orientation itself
        if img is None:
            raise DatasetError(
                f"{path}: cannot read the image ({exc}). Fix: re-save or remove the image."
            ) from None
        return img.shape[1], img.shape[0]
    if orientation in _TRANSPOSING_ORIENTATIONS:
        return height, width
    return width, height
