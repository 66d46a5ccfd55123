"""The key footer (Textual's Footer, fixed to not leak its rebuilt keys)."""
