"""AIS object-name templates: `shard-{0000..0999}.tar`, `a-{0..10..2}-b-{1..3}`.

Each `{start..end[..step]}` is a numeric range, zero-padded to the width of `start` when that
has leading zeros (AIS pads to the width of the digits given); several ranges expand
left-major. A template without a range is a prefix: it selects every object whose name starts
with it (an empty one, the whole bucket), as AIS does.
"""
import re

_RANGE = re.compile(r"\{(\d+)\.\.(\d+)(?:\.\.(\d+))?\}")
MAX_NAMES = 1 << 40  # larger templates are surely typos (jobs take a setting: max_template)


class TemplateError(ValueError):
    pass


class Template:
    def __init__(self, text, limit=MAX_NAMES, limit_name=""):
        """`limit`: the most names it may expand to (TemplateError beyond), the setting
        `limit_name` when it is one."""
        if not isinstance(text, str):
            raise TemplateError(f"invalid template {text!r}: expecting a string")
        self.text = text
        self.parts = []   # literal strings and (start, end, step, width) ranges, alternating
        pos = 0
        for m in _RANGE.finditer(text):
            start, end = int(m[1]), int(m[2])
            step = int(m[3]) if m[3] else 1
            if step < 1 or end < start:
                raise TemplateError(f'invalid template "{text}": range {m[0]} must have start <= '
                                    "end and a positive step")
            width = len(m[1]) if len(m[1]) > 1 and m[1][0] == "0" else 0
            self.parts += [text[pos:m.start()], (start, end, step, width)]
            pos = m.end()
        tail = text[pos:]
        if self.parts and ("{" in tail or "}" in tail) or not self.parts and (
                "{" in text or "}" in text):
            raise TemplateError(f'invalid template "{text}": expecting ranges like '
                                "{0..99} or {000..999..2}")
        self.parts.append(tail)
        if self.count() > limit:
            setting = f" (setting {limit_name})" if limit_name else ""
            raise TemplateError(f'template "{text}" names {self.count()} objects, over the '
                                f"limit of {limit}{setting}")

    @property
    def is_prefix(self):
        """True when the template has no range: it selects by prefix."""
        return len(self.parts) == 1

    def count(self):
        n = 1
        for p in self.parts[1::2]:
            n *= (p[1] - p[0]) // p[2] + 1
        return n

    def __iter__(self):
        """The names in order, lazily (a template may name millions)."""
        return _expand(self.parts, 0, "")


def _expand(parts, i, head):
    head += parts[i]
    if i + 1 == len(parts):
        yield head
        return
    start, end, step, width = parts[i + 1]
    for n in range(start, end + 1, step):
        yield from _expand(parts, i + 2, head + str(n).zfill(width))
