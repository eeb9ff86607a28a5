"""A corpus of >= 200 model responses with the answers lm-eval's gsm8k filters must extract.

Every expectation is derived by hand from the filter rules (findall, last match, first non-empty
group, strip, "[invalid]"), not computed by the code under test. `exact_match` expectations say
whether the extraction equals the reference once `,`, `$`, everything up to `#### ` and one trailing
`.` are removed and case is ignored. The parity lane runs the same corpus through lm-eval itself.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

INVALID = "[invalid]"


@dataclass(frozen=True)
class Case:
    response: str
    strict: str
    flexible: str
    reference: str
    strict_ok: bool
    flexible_ok: bool


def ref(gold: str) -> str:
    return f"Some worked steps 3 + 4 = <<3+4=7>>7.\n#### {gold}"


# (rendered answer, strict extraction after "#### ", flexible extraction as the last token,
#  whether strict / flexible equal gold 1234 after normalisation)
FORMATS_1234 = [
    ("1234", "1234", "1234", True, True),
    ("1,234", "1,234", "1,234", True, True),
    ("1,234.", "1,234.", "1,234.", True, True),
    ("$1,234", INVALID, "$1,234", False, True),
    ("$1234.", INVALID, "$1234.", False, True),
    ("1234.00", "1234.00", "1234.00", False, False),
    ("-1234", "-1234", "-1234", False, False),
    ("1234 dollars", "1234", "1234", True, True),
    ("12,34", "12,34", "12,34", True, True),  # commas are removed wherever they are
    ("1234..", "1234..", "1234..", False, False),  # only one trailing dot is ignored
]
FORMATS_7 = [
    ("7", "7", "7", True, True),
    ("-7", "-7", "-7", False, False),
    ("$7", INVALID, "$7", False, True),
    ("7.", "7.", "7.", True, True),
    ("7.0", "7.0", "7.0", False, False),
]


def _templated() -> list[Case]:
    cases: list[Case] = []
    for gold, formats in (("1234", FORMATS_1234), ("7", FORMATS_7)):
        for text, strict, flexible, s_ok, f_ok in formats:
            reference = ref(gold)
            # A: reasoning with numbers, then the answer line.
            cases.append(Case(f"Compute 12 * 3 = 36, then 36 + 6 = 42.\n#### {text}", strict, flexible, reference, s_ok, f_ok))
            # B: several '####' lines; strict takes the last one that matches (99 when the last has a '$').
            b_strict, b_ok = (strict, s_ok) if strict != INVALID else ("99", False)
            cases.append(Case(f"#### 99\nWait, let me redo that.\n#### {text}", b_strict, flexible, reference, b_ok, f_ok))
            # C: no '####' at all.
            cases.append(Case(f"So the answer is {text}", INVALID, flexible, reference, False, f_ok))
            # D: the bare answer.
            cases.append(Case(text, INVALID, flexible, reference, False, f_ok))
            # E: answer line with trailing newline and markdown around the marker.
            cases.append(Case(f"**Final answer:**\n#### {text}\n", strict, flexible, reference, s_ok, f_ok))
            # F: a number after the answer: flexible-extract takes that one.
            cases.append(Case(f"#### {text} is the total for 3 boxes", strict, "3", reference, s_ok, False))
    return cases


HAND = [
    Case("", INVALID, INVALID, ref("5"), False, False),
    Case("I cannot answer that.", INVALID, INVALID, ref("5"), False, False),
    Case("#### ", INVALID, INVALID, ref("5"), False, False),
    Case("####5", INVALID, "5", ref("5"), False, True),
    Case("#### five", INVALID, INVALID, ref("5"), False, False),
    Case("The answer is 5", INVALID, "5", ref("5"), False, True),
    Case("#### 5\n\n", "5", "5", ref("5"), True, True),
    Case("#### -5", "-5", "-5", ref("-5"), True, True),
    Case("#### -5.", "-5.", "-5.", ref("-5"), True, True),
    Case("#### --5", INVALID, "-5", ref("-5"), False, True),
    Case("#### 0.5", "0.5", "0.5", ref("0.5"), True, True),
    Case("#### .5", ".5", ".5", ref("0.5"), False, False),
    Case("#### 5%", "5", "5", ref("5"), True, True),
    Case("#### 5 apples. Also 6 pears.", "5", "6", ref("5"), True, False),
    Case("#### 1,000,000", "1,000,000", "1,000,000", ref("1000000"), True, True),
    Case("#### 1.000.000", "1.000.000", "1.000.000", ref("1000000"), False, False),
    Case("total: $18.\n#### 18", "18", "18", ref("18"), True, True),
    Case("She makes 9 * 2 = $18 every day.", INVALID, "$18", ref("18"), False, True),
    Case("She makes 9 * 2 = $18 every day, i.e. 126 per week.", INVALID, "126", ref("18"), False, False),
    Case("#### 18\n#### 20", "20", "20", ref("18"), False, False),
    Case("#### 18\n#### $20", "18", "$20", ref("18"), True, False),
    Case("#### 18\nThe answer is #### 18.", "18.", "18.", ref("18"), True, True),
    Case("<think>12, 13, 14...</think>\n#### 14", "14", "14", ref("14"), True, True),
    Case("Step 1: 3\nStep 2: 4\nStep 3: 5", INVALID, "5", ref("5"), False, True),
    Case("#### 3/4", "3", "4", ref("0.75"), False, False),
    Case("#### 1e3", "1", "3", ref("1000"), False, False),
    Case("answer = -0", INVALID, "-0", ref("0"), False, False),
    Case("#### 0", "0", "0", ref("0"), True, True),
    Case("#### 007", "007", "007", ref("7"), False, False),
    Case("####  42", INVALID, "42", ref("42"), False, True),
    Case("#### 42\t", "42", "42", ref("42"), True, True),
    Case("#### 42 ####", "42", "42", ref("42"), True, True),
    Case("Answer: 42,", INVALID, "42,", ref("42"), False, True),
    Case("Answer: ,42", INVALID, ",42", ref("42"), False, True),
    Case("Answer: 4,2,", INVALID, "4,2,", ref("42"), False, True),
    Case("Answer: $", INVALID, INVALID, ref("42"), False, False),
    Case("Answer: $$", INVALID, "$$", ref("42"), False, False),
    Case("Answer: ..", INVALID, "..", ref("42"), False, False),
    Case("Answer: 42\u00a0", INVALID, "42", ref("42"), False, True),
    Case("#### 42\u00a0", "42", "42", ref("42"), True, True),
    Case("Answer: \uff14\uff12", INVALID, INVALID, ref("42"), False, False),
    Case("#### 1,234.5", "1,234.5", "1,234.5", ref("1234.5"), True, True),
    Case("#### 12.50", "12.50", "12.50", ref("12.5"), False, False),
    Case("x" * 5000 + " #### 77", "77", "77", ref("77"), True, True),
    Case("#### 77" + "\nthinking 1 2 3" * 50, "77", "3", ref("77"), True, False),
]


def _reasoning_chains(count: int, seed: int = 7) -> list[Case]:
    """Arithmetic chains with many intermediate numbers; half end in '#### N', half in prose."""
    rnd = random.Random(seed)
    cases: list[Case] = []
    for i in range(count):
        total = rnd.randint(-500, 5000)
        steps = [f"{rnd.randint(1, 99)} + {rnd.randint(1, 99)} = {rnd.randint(2, 198)}" for _ in range(rnd.randint(2, 6))]
        body = "\n".join(steps)
        rendered = f"{total:,}" if i % 3 == 0 else str(total)
        if i % 2 == 0:
            response = f"{body}\nSo the total is {rendered}.\n#### {rendered}"
            strict = rendered
        else:
            response = f"{body}\nSo the total is {rendered}."
            strict = INVALID
        flexible = rendered if i % 2 == 0 else f"{rendered}."
        # Every gold is the plain total; a wrong gold for every fifth case checks the negative path.
        gold = str(total) if i % 5 else str(total + 1)
        ok = i % 5 != 0
        cases.append(Case(response, strict, flexible, ref(gold), ok and strict != INVALID, ok))
    return cases


CORPUS: list[Case] = _templated() + HAND + _reasoning_chains(120)
