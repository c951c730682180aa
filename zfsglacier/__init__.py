"""zfsglacier: back up OpenZFS datasets to any rclone remote and restore them verified."""

__version__ = "0.1.0"
