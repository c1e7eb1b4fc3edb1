#!/usr/bin/env python3
"""Writes data/tiny_corpus.txt: plain English-like sentences from a small fixed grammar, drawn with
a fixed seed, so the bundled training text is our own and byte-identical on every run.

    python3 data/make_corpus.py [--bytes N] [--seed S] [--out PATH]
"""
import argparse
import random

SUBJECTS = ["the planner", "a small model", "the cluster", "every rank", "the profiler", "our scheduler",
            "the first stage", "a device mesh", "the optimizer", "this checkpoint", "the last layer",
            "a pipeline", "the compiler", "one worker", "the data loader"]
VERBS = ["splits", "measures", "sends", "stores", "reads", "balances", "shards", "gathers", "writes",
         "checks", "trains", "updates", "reduces", "copies", "predicts"]
OBJECTS = ["the weights", "each batch", "the gradients", "a tensor", "the loss", "every layer",
           "the activations", "a message", "the tiles", "its state", "the tokens", "a new plan",
           "the bandwidth", "two streams", "the results"]
PLACES = ["across the nodes", "inside one node", "before the next step", "after every step",
          "on the fast links", "in a fixed order", "with little memory", "without waiting",
          "for each micro batch", "at the end of the epoch"]
CLOSERS = ["and the run goes on.", "so nothing is lost.", "while the others wait.",
           "because time is short.", "and then it rests.", "as the plan says."]


def sentence(rng):
    words = [rng.choice(SUBJECTS), rng.choice(VERBS), rng.choice(OBJECTS)]
    if rng.random() < 0.6:
        words.append(rng.choice(PLACES))
    if rng.random() < 0.4:
        words.append(rng.choice(CLOSERS))
    else:
        words[-1] += "."
    text = " ".join(words)
    return text[0].upper() + text[1:]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bytes", type=int, default=120_000, help="approximate size of the corpus")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--out", default="data/tiny_corpus.txt")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    lines, size = [], 0
    while size < args.bytes:
        paragraph = " ".join(sentence(rng) for _ in range(rng.randint(2, 5)))
        lines.append(paragraph)
        size += len(paragraph) + 1
    with open(args.out, "w", encoding="ascii") as out:
        out.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
