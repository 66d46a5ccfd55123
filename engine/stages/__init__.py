"""The pipeline's stages, one module per stage and named as the stage, plus what they share:
the context every stage receives, the runtime helpers and the registry (the one stage list)."""
