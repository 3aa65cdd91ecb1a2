"""Detection evaluation: predictions files, COCO and set-level metrics, overlay pictures."""
