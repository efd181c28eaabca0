"""One rule for the names of enrolled people, and one way to print any name safely.

A name is what a person is called in the gallery, the access log, the daemon's log lines and every table the
command line prints, so it must be one line of plain, visible text: :func:`check_name` enforces the rule (enroll,
``users rename`` and :meth:`edge.people.gallery.Gallery.add_templates` all call it), :func:`shown` prints a name
stored before the rule existed without letting it move the cursor, colour the terminal, reverse the line or forge
a log line.
"""
from __future__ import annotations

import unicodedata

from edge.errors import EnrollmentError

MAX_LENGTH = 64
RULE = (f"1-{MAX_LENGTH} visible characters on one line (no control, zero-width or text-direction characters), no "
        "/ or \\, not starting with '.' or '-'")
KINDS = {"Cc": "control character", "Cf": "invisible format character", "Cs": "undecodable byte",
         "Co": "private-use character", "Cn": "unassigned character", "Zl": "line separator",
         "Zp": "paragraph separator", "Zs": "space other than the ordinary one"}


def problem(name) -> str:
    """Why ``name`` (already stripped and NFC-normalised) breaks the rule; '' when it keeps it."""
    if not isinstance(name, str) or not name:
        return "it is empty"
    if len(name) > MAX_LENGTH:
        return f"it is {len(name)} characters long"
    # str.isprintable() is False exactly for the categories Cc (control, escape sequences, newlines), Cf (format:
    # zero-width, bidi overrides), Cs (lone surrogates: undecodable bytes), Co, Cn and every separator except the
    # ASCII space (Zl, Zp, no-break and other look-alike spaces).
    bad = next((c for c in name if not c.isprintable()), None)
    if bad is not None:
        kind = KINDS.get(unicodedata.category(bad), "character")
        label = unicodedata.name(bad, "")
        return f"it holds U+{ord(bad):04X}" + (f" {label}" if label else "") + f", {kind}"
    if "/" in name or "\\" in name:
        return "it holds a / or \\"
    if name[0] in ".-":
        return f"it starts with {name[0]!r}"
    if name != name.strip():
        return "it starts or ends with a space"
    return ""


def check_name(name) -> str:
    """The name as it is stored: stripped, NFC-normalised (one spelling per visible name); refuses a name that breaks
    the rule with an :class:`EnrollmentError` that shows it escaped."""
    clean = unicodedata.normalize("NFC", name.strip()) if isinstance(name, str) else name
    why = problem(clean)
    if why:
        raise EnrollmentError(f"invalid name {shown(name, quote=True)}: {why} "
                              f"(a name is {RULE})")
    return clean


def shown(name, quote: bool = False, limit: int = MAX_LENGTH + 16) -> str:
    """``name`` fit to print in a log line or a table: as it is (quoted with ``quote``) when it keeps the rule, else
    quoted with every invisible or control character escaped (``'\\x1b[31mbob'``) and cut to ``limit`` characters.
    None (nobody) is ``-``."""
    if name is None:
        return "-"
    name = str(name)
    if not quote and not problem(name):
        return name
    text = repr(name)        # escapes exactly the characters str.isprintable() refuses
    return text if len(text) <= limit else text[:limit - 4] + "..." + text[-1]
