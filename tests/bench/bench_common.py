"""What the reports of pgbench.sh and profile.sh share: the problems footer."""


def print_problems(path):
    """The runs with errors and the proxy crashes that the scripts wrote to path, or a line
    saying there were none."""
    text = open(path).read().strip()
    print()
    if text:
        print("problems (the exact pgbench command; its error lines, counted)")
        print(text)
    else:
        print("no errors from pgbench, no proxy crashes")
