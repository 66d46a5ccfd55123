"""One finding of the integrity check of a paper, and how it is shown."""

from __future__ import annotations

from dataclasses import asdict, dataclass

SEVERITY_ERROR = "error"
SEVERITY_LOW = "low"
"""A number the check could not tie to a metric and found nowhere in the runs: shown, but
below the tied findings (it may be a setup number the check does not know)."""


@dataclass(frozen=True)
class Finding:
    kind: str
    """unmatched_number | untied_number | wrong_direction | intermediate_result |
    mixed_run_row | overclaim | hardware_claim | software_claim |
    unverifiable_hardware_claim | unverifiable_software_claim | missing_figure |
    hidden_text | process_jargon | unsupported_analysis | placeholder | causality"""
    message: str
    location: str
    """``file:line`` in the paper (or the file the finding is about)."""
    context: str = ""
    quote: str = ""
    """The claimed text itself (a number, a phrase)."""
    severity: str = SEVERITY_ERROR

    def to_dict(self) -> dict[str, str]:
        return asdict(self)

    def line(self) -> int:
        tail = self.location.rsplit(":", 1)[-1]
        return int(tail) if tail.isdigit() else 0

    def render(self) -> str:
        """``file:line  kind  quote  ->  evidence`` (one line)."""
        quote = " ".join((self.quote or self.context).split())[:80]
        return f"{self.location}  {self.kind}  {quote}  ->  {' '.join(self.message.split())}"
