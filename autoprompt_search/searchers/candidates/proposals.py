"""Templates proposed by the model itself (APE, Zhou et al. 2022, "Large Language Models Are
Human-Level Prompt Engineers").

An instruction model is shown a few labelled training examples and asked for an instruction;
each sampled reply is cut down to one usable sentence and put in front of a base template
(``instruction\\n<base>``). Replies that leave nothing usable (empty, too long, not text) are
rejected; the caller still checks each template against the task before scoring it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from ...data.tasks import Example
from ...models.language_model import LanguageModel

#: An instruction longer than this many words is more essay than prompt (APE's are 5-20 words).
MAX_WORDS = 30

#: "Here's a possible instruction for labeling reviews:" and the like, before the instruction itself.
_LEAD = re.compile(r"^\W*(?:here(?:'s| is) (?:a|an|the) )?(?:possible |short )?instruction\w*(?: for [^:]*)?:\s*", re.I)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s")


def instruction_request(examples: Sequence[Example], words: Mapping[str, str], fields: Sequence[str]) -> str:
    """The chat message asking for an instruction, showing ``examples`` with their label words."""
    shown = "\n".join(
        " | ".join(f"{name}: {example.fields[name]}" for name in fields) + f" -> {words[str(example.label)]}"
        for example in examples
    )
    options = " or ".join(dict.fromkeys(words.values()))
    return (f"Here are inputs, each labelled {options}:\n{shown}\n"
            "Write one short instruction that tells a reader how to choose the label. "
            "Reply with the instruction only.")


def instruction_of(reply: str) -> str | None:
    """The first line of a model reply that reads as a short instruction (its first sentence), or None."""
    for line in reply.splitlines():
        text = _LEAD.sub("", line.strip()).strip(" \"'*-:")
        text = _SENTENCE_END.split(text, maxsplit=1)[0].strip(" \"'")
        if 3 <= len(text.split()) <= MAX_WORDS and text.isprintable() and any(c.isalpha() for c in text):
            return text
    return None


def propose_templates(
    lm: LanguageModel,
    examples: Sequence[Example],
    words: Mapping[str, str],
    fields: Sequence[str],
    base: str,
    *,
    samples: int,
    seed: int,
    max_new_tokens: int = 48,
) -> list[str]:
    """Up to ``samples`` distinct templates ``instruction\\n<base>`` written from the model's replies."""
    replies = lm.generate(instruction_request(examples, words, fields), samples=samples,
                          max_new_tokens=max_new_tokens, seed=seed)
    found = [instruction_of(reply) for reply in replies]
    return list(dict.fromkeys(_literal(text) + "\n" + base for text in found if text))


def _literal(text: str) -> str:
    """``text`` as literal template text (braces and brackets doubled)."""
    return text.replace("{", "{{").replace("}", "}}").replace("[", "[[").replace("]", "]]")
