#!/usr/bin/env python3
"""Lists import circles between the files of src/: a file that imports a
module which imports it back, directly or through others.

A file's imports are every path it names that starts at `crate::`,
`super::` or `self::`, or at a child module it declares (`mod x;` then
`x::...`). A path counts for the longest module prefix that is a file of
src/. Exit 0 and "no import circle" when the graph is acyclic, else exit 1
and one line per circle (a strongly connected component); with -v, the
imports inside each circle, so you see which one to cut.
"""
import os
import re
import sys

SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")


def module_of(path):
    rel = os.path.relpath(path, SRC)[:-3].split(os.sep)
    if rel[-1] == "mod":
        rel = rel[:-1]
    if rel in (["lib"], ["main"]):
        return ()
    return tuple(rel)


# One pass, leftmost first, so a `//` inside a string is not a comment and a
# quote inside a comment does not open a string. Character literals such as
# '{' go too: they would unbalance the braces of inline modules.
TOKENS = re.compile(
    r'//[^\n]*|/\*.*?\*/|r(#*)"(?:.|\n)*?"\1|b?"(?:\\.|[^"\\])*"'
    r"|b?'(?:\\.|[^'\\])'",
    re.S,
)


def strip_comments_and_strings(text):
    return TOKENS.sub(lambda m: '""' if m.group(0).endswith(('"', "'")) else "", text)


def expand_use_trees(text):
    """Turns `use a::{b, c::{d}}` into paths a::b, a::c::d."""
    paths = []
    for m in re.finditer(r"\buse\s+([^;]+);", text):
        paths.extend(flatten(m.group(1).replace("\n", " ").strip()))
    return paths


def flatten(tree):
    tree = tree.strip()
    i = tree.find("{")
    if i < 0:
        return [re.sub(r"\s+as\s+\w+$", "", tree).strip()]
    prefix = tree[:i]
    inner = tree[i + 1 : tree.rfind("}")]
    parts, depth, cur = [], 0, ""
    for ch in inner:
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
            continue
        depth += ch == "{"
        depth -= ch == "}"
        cur += ch
    parts.append(cur)
    out = []
    for p in parts:
        if p.strip():
            out.extend(prefix + q for q in flatten(p))
    return out


def inline_modules(text):
    """The inline `mod name { ... }` blocks of `text`, outermost only, as
    (name, body, text without the block)."""
    found, rest, pos = [], "", 0
    for m in re.finditer(r"\bmod\s+(\w+)\s*\{", text):
        if m.start() < pos:
            continue
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        found.append((m.group(1), text[m.end() : i - 1]))
        rest += text[pos : m.start()]
        pos = i
    return found, rest + text[pos:]


def imports(text, scope, modules):
    """The files of src/ that code in module `scope` names. `self` is
    `scope` and `super` its parent, whether the file is `x.rs` or
    `x/mod.rs`; an inline `mod tests { ... }` is its own scope, so its
    `use super::*` names the file it sits in, not the file's parent."""
    inner, text = inline_modules(text)
    found = set()
    for name, body in inner:
        found |= imports(body, scope + (name,), modules)
    children = set(re.findall(r"\bmod\s+(\w+)\s*;", text))
    candidates = expand_use_trees(text)
    candidates += re.findall(r"\b((?:crate|super|self)(?:::\w+)+)", text)
    for child in children:
        candidates += re.findall(r"(?<![:\w])(%s(?:::\w+)+)" % child, text)
    for c in candidates:
        parts = [p for p in c.replace(" ", "").split("::") if p]
        if not parts:
            continue
        if parts[0] == "crate":
            base, rest = (), parts[1:]
        elif parts[0] in ("super", "self"):
            base = list(scope)
            rest = parts
            while rest and rest[0] in ("super", "self"):
                if rest[0] == "super":
                    base = base[:-1]
                rest = rest[1:]
            base = tuple(base)
        elif parts[0] in children:
            base, rest = scope, parts
        else:
            continue
        # The longest prefix that is a file: an item of an inline module
        # belongs to the file holding it.
        best, target = None, ()
        for p in base + tuple(rest):
            target = target + (p,)
            if target in modules:
                best = target
        if best is None and () in modules:
            best = ()
        if best is not None:
            found.add(best)
    return found


def main():
    files = {}
    for root, _, names in os.walk(SRC):
        for n in names:
            if n.endswith(".rs"):
                p = os.path.join(root, n)
                files[module_of(p)] = p
    modules = set(files)
    edges = {m: set() for m in modules}
    for mod, path in files.items():
        with open(path, encoding="utf-8") as f:
            text = strip_comments_and_strings(f.read())
        for target in imports(text, mod, modules):
            if target != mod:
                edges[mod].add(target)
    # Tarjan's strongly connected components.
    index, low, stack, on, sccs, counter = {}, {}, [], set(), [], [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                sccs.append(comp)

    for v in sorted(modules):
        if v not in index:
            visit(v)
    name = lambda m: os.path.relpath(files[m], os.path.join(SRC, ".."))
    if not sccs:
        print("no import circle (%d files)" % len(modules))
        return 0
    for comp in sorted(sccs, key=len, reverse=True):
        print("circle of %d files: %s" % (len(comp), " ".join(sorted(name(m) for m in comp))))
        if "-v" in sys.argv:
            inside = set(comp)
            for a in sorted(comp):
                for b in sorted(edges[a] & inside):
                    mutual = "  (mutual)" if a in edges[b] else ""
                    print("    %s -> %s%s" % (name(a), name(b), mutual))
    return 1


if __name__ == "__main__":
    sys.exit(main())
