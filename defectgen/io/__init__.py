"""Image input: reading OK images from folders, MVTec-layout data sets, and the embedded default set."""
from .images import IMAGE_EXTENSIONS, default_images, list_images, load_folder, read_image
from .mvtec import MVTecBatch, MVTecItem, MVTecLayout, load_image, load_mask, read_mvtec

__all__ = ["IMAGE_EXTENSIONS", "default_images", "list_images", "load_folder", "read_image",
           "MVTecBatch", "MVTecItem", "MVTecLayout", "load_image", "load_mask", "read_mvtec"]
