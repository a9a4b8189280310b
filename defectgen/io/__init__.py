"""Image input: reading OK images from folders, and the embedded default set."""
from .images import IMAGE_EXTENSIONS, default_images, list_images, load_folder, read_image

__all__ = ["IMAGE_EXTENSIONS", "default_images", "list_images", "load_folder", "read_image"]
