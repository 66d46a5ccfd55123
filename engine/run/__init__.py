"""Running untrusted code: the contained executor, its isolation layers and limits, output
capture, process statistics, GPUs and the slot scheduler, and the recorded run environment."""
