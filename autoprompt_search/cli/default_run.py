"""The embedded default run: template discovery on a demo task written for this package.

``autoprompt-search discover`` with no data argument uses these: the demo sentiment task and a
small pool of templates and label words for the manual searcher to choose among, so a fresh
install shows a real search (candidates scored on dev, winner scored on held-out test) in a minute.
"""

from __future__ import annotations

DEMO_TASK = "sentiment"

DEMO_TEMPLATES = (
    "Review: {sentence}\nSentiment:[P]",
    "{sentence} All in all, it was[P]",
    "Text: {sentence}\nQuestion: Is this review positive or negative?\nAnswer:[P]",
    "{sentence}\nThe reviewer's opinion is[P]",
)

DEMO_VERBALIZERS = (
    {"negative": "negative", "positive": "positive"},
    {"negative": "bad", "positive": "good"},
)

#: Fact demo (``--data capitals``): LAMA-style templates for country → capital.
CAPITAL_TEMPLATES = (
    "The capital of {sub_label} is[P]",
    "{sub_label}'s capital city is[P]",
    "Q: What is the capital of {sub_label}?\nA:[P]",
)


#: Soft-prompt searchers train [V] slots: the manual template with a few soft tokens before [P]'s line.
SOFT_TEMPLATES = {"classification": "Review: {sentence}[V*4]\nSentiment:[P]",
                  "fact": "[V*4]The capital of {sub_label} is[P]"}

#: The optuna searcher's demo grammars: the templates above as choice points (3 x 4 and 3 templates).
DEMO_GRAMMAR = ("<<Review: |Text: |>>{sentence}<<\nSentiment:| All in all, it was|\nThe reviewer's opinion is"
                "|\nQuestion: Is this review positive or negative?\nAnswer:>>[P]")
CAPITAL_GRAMMAR = ("<<The capital of {sub_label} is|{sub_label}'s capital city is"
                   "|Q: What is the capital of {sub_label}?\nA:>>[P]")


def demo_config(searcher: str, kind: str, *, soft: bool = False, deep: bool = False) -> dict:
    """Templates and label words a searcher starts from on a demo task when the user gives none
    (``deep``: the deep-prompt searchers, whose prompt lives in the layers, not in [V] slots)."""
    words = [DEMO_VERBALIZERS[0]] if kind == "classification" else []
    if deep:
        return {"templates": [DEMO_TEMPLATES[0] if kind == "classification" else CAPITAL_TEMPLATES[0]],
                "verbalizers": words}
    if soft:
        return {"templates": [SOFT_TEMPLATES[kind]], "verbalizers": words}
    if searcher == "optuna":
        grammar = CAPITAL_GRAMMAR if kind == "fact" else DEMO_GRAMMAR
        return {"templates": [grammar], "verbalizers": [] if kind == "fact" else list(DEMO_VERBALIZERS)}
    if kind == "fact":
        triggered = ["The capital of {sub_label} [T*2] is[P]"]
        return {"templates": list(CAPITAL_TEMPLATES) if searcher in ("manual", "filter") else triggered}
    if searcher == "autoprompt":
        return {"templates": ["Review: {sentence} [T*3]\nSentiment:[P]"], "verbalizers": [DEMO_VERBALIZERS[0]]}
    if searcher == "label-search":
        return {"templates": [DEMO_TEMPLATES[0]]}
    return {"templates": list(DEMO_TEMPLATES), "verbalizers": list(DEMO_VERBALIZERS)}
