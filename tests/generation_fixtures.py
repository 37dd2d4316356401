"""A tiny table-to-text task for the generation tests (words the conftest tokenizer knows)."""

from __future__ import annotations

from autoprompt_search.data.tasks import Example, Task

ROWS = (
    ("name[Paris], country[France]", ("Paris is the capital of France.", "The capital of France is Paris.")),
    ("name[Rome], country[Italy]", ("Rome is the capital of Italy.",)),
    ("name[Berlin], country[Germany]", ("Berlin is the capital of Germany.", "It is in Germany.", "A city.")),
    ("name[Madrid], country[Spain]", ("Madrid is the capital of Spain.", "The capital of Spain is Madrid.")),
    ("name[movie], review[good]", ("This movie is great and the acting is good.",)),
    ("name[film], review[bad]", ("A terrible movie with a bad plot.", "It was terrible.")),
)
TEMPLATE = "Table: {mr}\nText:[P]"


def generation_task() -> Task:
    examples = [Example.generation({"mr": mr}, refs) for mr, refs in ROWS]
    return Task("tiny-e2e", "generation", {"train": examples[:4], "dev": examples[2:5], "test": examples[3:]},
                fields=("mr",))
