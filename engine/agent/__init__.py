"""The model as a code editor: the bounded tool-call loop and the file-editing tools it uses."""
