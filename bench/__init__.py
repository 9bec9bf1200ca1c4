"""Benchmarks (make bench, make bench-cluster)."""


def print_table(headers: tuple[str, ...], rows: list[tuple]) -> None:
    """Rows as aligned columns under a header line, as both benchmarks print them."""
    width = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    line = lambda cells: "  ".join(f"{str(c):<{w}}" for c, w in zip(cells, width)).rstrip()  # noqa: E731
    print("\n" + line(headers))
    print(line(["-" * w for w in width]))
    for row in rows:
        print(line(row))
