#!/usr/bin/python3
"""Writes the man page sparrow(1) from the tool's own --help texts.

    python3 doc/make_man.py build/sparrow build/sparrow.1

The build runs this after linking the tool (cmake/install.cmake), so the man page and
--help cannot disagree: each command's section is its --help text verbatim (escaped for
roff), around it a few sections that --help has no room for. tests/test_install.sh
renders the page with `man -l` and checks that every --help line is in it.
"""
import subprocess
import sys


def help_text(binary, *args):
    out = subprocess.run([binary, *args, "--help"], check=True, capture_output=True, text=True)
    return out.stdout


def commands(main_help):
    """The command names listed under "commands:" in `sparrow --help`."""
    names, inside = [], False
    for line in main_help.splitlines():
        if line.strip() == "commands:":
            inside = True
        elif inside and line.startswith("  ") and line.split():
            word = line.split()[0]
            if word.startswith("-"):
                break
            names.append(word)
        elif inside and names and not line.strip():
            break
    return names


def roff(text):
    """Verbatim text for a .nf block: backslashes and hyphens escaped (a plain '-' may
    render as a typographic hyphen that breaks copied options), lines starting with a
    control character protected."""
    lines = []
    for line in text.rstrip("\n").split("\n"):
        line = line.replace("\\", "\\e").replace("-", "\\-")
        if line.startswith((".", "'")):
            line = "\\&" + line
        lines.append(line)
    return "\n".join(lines)


def page(binary):
    version = subprocess.run([binary, "--version"], check=True, capture_output=True,
                             text=True).stdout.split()[1]
    main = help_text(binary)
    out = [
        f'.TH SPARROW 1 "" "sparrow {version}" "User Commands"',
        ".nh",  # no hyphenation: option names must stay whole
        ".SH NAME",
        "sparrow \\- train very wide neural networks on CPUs with LSH\\-sampled neurons",
        ".SH SYNOPSIS",
        ".B sparrow",
        ".I command",
        "[\\fIoptions\\fR]",
        ".SH DESCRIPTION",
        "sparrow trains networks whose output layer has hundreds of thousands or millions",
        "of neurons (extreme classification: one neuron per label) on ordinary CPUs.",
        "Locality\\-sensitive hash tables over the output neurons pick, for each input, the",
        "few neurons likely to fire; the forward pass, the backward pass and the optimizer",
        "step touch only those. The sections below are the commands' \\fB\\-\\-help\\fR texts.",
        ".PP",
        ".nf",
        roff(main),
        ".fi",
        ".SH COMMANDS",
    ]
    for name in commands(main):
        out += [f".SS sparrow {name}", ".nf", roff(help_text(binary, name)), ".fi"]
    out += [
        ".SH ENVIRONMENT",
        ".TP",
        ".B SPARROW_PROGRESS",
        "\\fBbar\\fR or \\fBplain\\fR: the progress display of gen, reading and training",
        "(by default a bar redrawn in place when stderr is a terminal, else plain lines).",
        ".TP",
        ".B SPARROW_PROGRESS_SECONDS",
        "seconds between two progress updates (default 0.1 for the bar, 5 for plain lines).",
        ".TP",
        ".B SPARROW_PLOT_SCRIPT",
        "the plot.py that \\fBsparrow plot\\fR runs (default: the installed one).",
        ".SH FILES",
        "Data sets: the Extreme Classification Repository text format (a header",
        "\\(lqN D L\\(rq, then \\(lql1,l2 f:v f:v ...\\(rq per point, 0\\-based ids) or",
        "svmlight/libsvm. Metrics: JSON Lines, a first line {\\(dqrun\\(dq: ...} with the",
        "run's options and versions, then one object per evaluation.",
        ".SH EXIT STATUS",
        "0 success; 2 bad input or usage (the message names the file, line and problem);",
        "1 internal failure or a diverged training run; 130 or 143 training stopped by",
        "SIGINT or SIGTERM (after saving).",
        ".SH EXAMPLES",
        ".nf",
        roff("sparrow gen --preset small --out data\n"
             "sparrow train --train data/train.txt --test data/test.txt --epochs 3 \\\n"
             "    --save small.model --metrics small.jsonl\n"
             "sparrow plot small.jsonl --out curve.png\n"
             "sparrow predict --model small.model --input data/test.txt --k 3"),
        ".fi",
        ".SH SEE ALSO",
        "The README of the sparrow sources; the C API in \\fIsparrow.h\\fR",
        "(\\fBpkg\\-config \\-\\-cflags \\-\\-libs sparrow\\fR).",
    ]
    return "\n".join(out) + "\n"


def main(argv):
    if len(argv) != 2:
        print("usage: make_man.py SPARROW_BINARY OUT.1", file=sys.stderr)
        return 2
    text = page(argv[0])
    with open(argv[1], "w") as f:
        f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
