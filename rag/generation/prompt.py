"""The prompt: the question and the (compressed) context with source ids, as chat messages.

Built with Haystack's ``ChatPromptBuilder``, which already renders Jinja templates into ``ChatMessage``
lists and round-trips through YAML, so the stage only supplies the templates and checks them. A config
may replace either template; both see ``query`` (the question) and ``documents`` (what the stage
before the prompt returned, each with ``id``, ``content`` and ``meta``)::

    stages:
      - {kind: prompt, name: chat, system: "Answer in one sentence.", user: "{{ query }}"}

Empty context is a documented rule, not an error: the default template then says that nothing was
retrieved, and the model answers without passages.

>>> messages = chat_prompt_builder().run(query="Why?", documents=[])["prompt"]
>>> [m.role.value for m in messages]
['system', 'user']
>>> print(messages[1].text)
Passages:
(no passages were retrieved)
<BLANKLINE>
Question: Why?
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from haystack.components.builders import ChatPromptBuilder
from haystack.dataclasses import ChatMessage

from rag.core.validation import check_instance

DEFAULT_SYSTEM = (
    "You answer questions from the numbered passages the user gives. Answer with a short phrase taken "
    "from the passages, and cite the ids of the passages you used in square brackets. If the passages "
    "do not hold the answer, say that you do not know."
)
# Each passage is "[id] title: text"; the ids are what a reply cites and what `rag query` lists as sources.
DEFAULT_USER = (
    "Passages:\n"
    "{% for doc in documents %}[{{ doc.id }}] {% if doc.meta.title %}{{ doc.meta.title }}: {% endif %}"
    "{{ doc.content }}\n{% else %}(no passages were retrieved)\n{% endfor %}"
    "\nQuestion: {{ query }}"
)


@dataclass(frozen=True)
class PromptSettings:
    """The settings of the ``prompt`` stage ``chat``: Jinja templates of the two messages.

    :param system: the system message (``""`` sends none).
    :param user: the user message; it should use ``{{ query }}`` and loop over ``documents``.
    """

    system: str = field(default=DEFAULT_SYSTEM, metadata={"example": "Answer in one sentence."})
    user: str = field(
        default=DEFAULT_USER,
        metadata={
            "pattern": r"(?s).*\{\{\s*query\s*\}\}.*",
            "allowed": "a template that contains {{ query }}",
            "example": "{{ query }}",
        },
    )

    def __post_init__(self) -> None:
        check_instance(self)


def chat_prompt_builder(system: str = DEFAULT_SYSTEM, user: str = DEFAULT_USER) -> ChatPromptBuilder:
    """A ``ChatPromptBuilder`` over the two templates; it takes ``query`` and ``documents``."""
    settings = PromptSettings(system, user)
    template = [ChatMessage.from_system(settings.system)] if settings.system else []
    template.append(ChatMessage.from_user(settings.user))
    # Both inputs required: a prompt built without the question or the context is a wiring mistake.
    return ChatPromptBuilder(
        template=template, variables=["query", "documents"], required_variables=["query", "documents"]
    )


def prompt_text(messages: list[Any]) -> str:
    """All the text of a prompt (for counting what it sends)."""
    return "\n".join(m.text or "" for m in messages)
