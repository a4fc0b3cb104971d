"""Citizens' and staff's photos: checked by their content, stripped of every metadata, oriented,
thumbnailed (`photos.py`). The store keeps them (`gateway/store/photos.py`); the API serves them."""
