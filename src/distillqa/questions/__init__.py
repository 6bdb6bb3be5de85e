"""Rule-based question making, no model involved: answer candidates, cloze questions, span clozes."""
