"""Image input: reading OK images from folders, MVTec-layout data sets, aligned pairs with boxes, and the embedded
default set."""
from .images import IMAGE_EXTENSIONS, default_images, list_images, load_folder, read_image
from .mvtec import DefectSplit, MVTecBatch, MVTecItem, MVTecLayout, load_image, load_mask, read_mvtec, split_defects
from .pairs import DEEPPCB_TYPES, PairItem, read_pairs

__all__ = ["IMAGE_EXTENSIONS", "default_images", "list_images", "load_folder", "read_image",
           "MVTecBatch", "MVTecItem", "MVTecLayout", "load_image", "load_mask", "read_mvtec", "DefectSplit",
           "split_defects",
           "DEEPPCB_TYPES", "PairItem", "read_pairs"]
