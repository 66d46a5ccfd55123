"""The paper as a document: LaTeX compile and lint, a trustworthy text view of the source,
citations, the recorded run facts, the deterministic integrity checks and the review form."""
