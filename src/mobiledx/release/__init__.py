"""What ships: the release bundle, its model card and the release page."""
