"""A rule-based, negation- and uncertainty-aware report labeller (NegBio / CheXpert style).

``label_report(text)`` maps a free-text chest radiograph report to the 15 REPORT_LABELS
(the 14 NIH findings + ``no_finding``): ``1.0`` positive, ``0.0`` negated, ``-1.0`` uncertain,
``NaN`` not mentioned. The pipeline, per sentence:

1. **Mentions**: per finding, regexes for the finding and its synonyms. Each rule has a
   default state: most are positive, a few are negative statements in themselves ("heart
   size is normal" -> Cardiomegaly 0) or uncertain in themselves ("vascular congestion" ->
   Edema -1). Exclusions drop look-alikes ("pericardial effusion", "subcutaneous emphysema",
   "mass effect").
2. **Cues**: negation cues before the mention ("no", "without", "negative for", "free of",
   "no evidence of") or after it ("is not seen", "has resolved", "absent"), and uncertainty
   cues ("cannot exclude", "may represent", "possible", "suspicious for", "?"). Phrases that
   contain a negation word but do not negate ("cannot be excluded", "no change in",
   "no interval change") are masked before negation is looked for.
3. **Scope**: a cue reaches a mention in the same sentence when at most ``PRE_WINDOW``
   (``POST_WINDOW``) words lie between them and no scope breaker does ("but", "however",
   "which", ..., or a verb such as "is"/"are"/"seen", which starts a new clause:
   "no effusion is seen and the heart is enlarged"). Lists stay in scope: "No displaced rib
   fractures, pneumothorax, or pleural effusion" negates both findings.
4. **Per report** (CheXpert's rule): positive beats uncertain beats negative.
   Negation beats uncertainty when both reach a mention ("no consolidation to suggest
   pneumonia" -> Pneumonia 0).
5. **no_finding**: 0 if any finding is positive; -1 if none is positive but one is uncertain;
   1 if none is positive/uncertain and the report uses normal language ("normal chest",
   "no acute cardiopulmonary abnormality", "lungs are clear") or negates at least two
   findings; NaN otherwise.

Documented choices (see ``docs/data.md`` for the measured agreement with IU MeSH terms):
"likely"/"probable"/"consistent with" count as **positive** (a radiologist's leading
impression; CheXpert-style hedges such as "possible"/"may" are uncertain); "granuloma" is
**not** a Nodule (calcified granulomas are benign sequelae and MeSH keeps them apart);
a bare "opacity" is **not** Infiltration (too often atelectasis, a nodule or a scar), but
"infiltrate" and "airspace disease/opacity" are; "scarring" counts as Fibrosis; blunted
costophrenic angles are an **uncertain** Effusion; hyperinflation is a positive Emphysema.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from radclip.io.labels import NEGATIVE, NIH_LABELS, NO_FINDING, POSITIVE, REPORT_LABELS, UNCERTAIN

NAN = float("nan")
# The rules are frozen: the held-out agreement in docs/data.md was measured with exactly these rules
# (``rules_fingerprint()``). Changing a rule means re-measuring on a split the change was not tuned on.
FROZEN_RULES_SHA256 = "ed106988a22a4464f9eb40ee9521207c1839683159f16f3b7a7fbf628c966fb6"
PRE_WINDOW = 12  # words allowed between a pre-negation cue and its mention (long "no A, B, or C" lists)
POST_WINDOW = 6  # words allowed between a mention and a post-negation cue ("A and B are not seen")
UNC_WINDOW = 8  # words allowed between an uncertainty cue and its mention, either side


@dataclass(frozen=True)
class Rule:
    """One mention pattern for one finding."""

    label: str  # a REPORT_LABELS name
    pattern: re.Pattern[str]  # matched on the lower-cased sentence
    state: float  # POSITIVE (cues may change it), NEGATIVE or UNCERTAIN (fixed by the phrase itself)


def _rules(label: str, state: float, *patterns: str) -> list[Rule]:
    return [Rule(label, re.compile(p), state) for p in patterns]


_NOT_ENLARGED = r"(?:(?!enlarg|large|cardiomegaly|\bbut\b|\bhowever\b)[^.;]){0,60}?"
_CP = r"costophrenic(?: and cardiophrenic)? (?:angles?|sulcus|sulci|recess(?:es)?)"
RULES: list[Rule] = [
    *_rules("Atelectasis", POSITIVE, r"\batelecta\w*", r"\bvolume loss\b", r"\b(?:lobar|lobe|lung|segmental|subsegmental) collapse\b",
            r"\bcollapse of the (?:\w+ ){0,3}(?:lobe|lung)\b", r"\bcollapsed (?:\w+ )?(?:lobe|lung)\b"),
    *_rules("Cardiomegaly", NEGATIVE,
            r"\b(?:heart|cardiac|cardiomediastinal)\b" + _NOT_ENLARGED + r"\b(?:normal|within normal limits|unremarkable|not enlarged)\b",
            r"\bnormal(?:-sized| sized)? (?:heart|cardiac|cardiomediastinal)\b"),
    *_rules("Cardiomegaly", UNCERTAIN,
            r"\b(?:heart|cardiac)\b[^.;]{0,40}?\b(?:upper limits?(?: of)? normal|top(?:-| )normal|borderline|high normal)\b",
            r"\bborderline (?:cardiomegaly|heart|cardiac|enlarge\w* (?:heart|cardiac))"),
    *_rules("Cardiomegaly", POSITIVE, r"\bcardiomegaly\b",
            r"\b(?:heart|cardiac (?:silhouette|shadow|contour|size))\b[^.;]{0,40}?\b(?:enlarged|enlargement|large|prominent)\b",
            r"\bcardiac enlargement\b",
            r"\b(?:enlarged|enlargement of the|prominent|large)\s+(?:\w+\s+)?(?:heart|cardiac)\b"),
    *_rules("Effusion", NEGATIVE, _CP + r" (?:are|is|remain) (?:sharp|clear|preserved|normal)", r"\bsharp " + _CP),
    *_rules("Effusion", UNCERTAIN, r"\bblunt(?:ing|ed)? of the (?:\w+ ){0,3}" + _CP, _CP + r" (?:are |is )?blunt\w*"),
    *_rules("Effusion", POSITIVE, r"(?<!pericardial )\beffusions?\b", r"\bpleural fluid\b", r"\bfluid in the (?:\w+ )?(?:pleural space|fissure)",
            r"\bhydrothorax\b", r"\bhemothorax\b"),
    *_rules("Infiltration", POSITIVE, r"\binfiltrat\w*", r"\bair ?space (?:disease|opacit\w*|opacification)"),
    *_rules("Mass", POSITIVE, r"\bmass(?:es)?\b(?! effect)"),
    *_rules("Nodule", POSITIVE, r"\bnodules?\b", r"\bnodular (?:opacit\w*|densit\w*|lesions?|prominence)", r"\bnodularity\b", r"\bfibronodular\b"),
    *_rules("Pneumonia", POSITIVE, r"\b(?:broncho)?pneumonias?\b"),
    *_rules("Pneumothorax", POSITIVE, r"\b\w*pneumothora(?:x|ces|xes)\b", r"\bptx\b"),
    *_rules("Consolidation", POSITIVE, r"\bconsolidat\w*"),
    *_rules("Edema", UNCERTAIN, r"\b(?:vascular|pulmonary|venous) congestion\b", r"\bcongestive (?:heart )?failure\b", r"\bchf\b",
            r"\bcephalization\b", r"\bkerley\b"),
    *_rules("Edema", POSITIVE, r"\bedema\b"),
    *_rules("Emphysema", POSITIVE, r"(?<!subcutaneous )\bemphysema\w*", r"\bcopd\b", r"\bchronic obstructive (?:pulmonary|lung) disease\b",
            r"\bbull(?:ae|ous)\b"),
    # Hyperinflation is a sign of emphysema, not the diagnosis (MeSH codes it as Lung/hyperdistention).
    *_rules("Emphysema", UNCERTAIN, r"\bhyper-?(?:inflat|expan|aerat)\w*", r"\bover-?inflat\w*"),
    *_rules("Fibrosis", POSITIVE, r"\bfibros\w*", r"\bfibrotic\b", r"(?<!pleural )\bscarring\b"),
    *_rules("Pleural_Thickening", POSITIVE, r"\bpleural(?:-parenchymal| parenchymal| based)? (?:thickening|plaques?|scarring)\b",
            r"\bthickening of the (?:\w+ ){0,2}(?:pleura|fissures?)\b", r"\b(?:bi)?apical (?:[\w/]+ ){0,2}(?:thickening|capping|cap)\b",
            r"\bfissur\w* thickening\b"),
    *_rules("Hernia", POSITIVE, r"\bhernia(?:s|tion)?\b"),
]

_NORMAL_LANGUAGE = re.compile(
    r"\b(?:normal|negative|unremarkable) (?:chest|study|exam|examination|radiograph|x-ray|pa and lateral)"
    r"|\bno (?:\w+ )?(?:acute|active) (?:\w+ ){0,2}(?:abnormalit\w*|disease|process|findings?|pathology|changes?)"
    r"|\blungs? (?:are |is )?(?:\w+ )?clear\b|\bclear lungs\b|\bno (?:significant )?abnormalit\w*"
)
# Phrases with a negation word that do not negate: masked before negation cues are searched.
_PSEUDO = re.compile(
    r"\bno (?:significant |interval |appreciable |substantial )?(?:change|increase|decrease|difference)\b|\bwithout (?:significant )?change\b"
    r"|\bnot (?:significantly )?(?:changed|increased|decreased)\b|\bnot only\b"
)
_UNC_PRE = re.compile(
    r"\b(?:cannot|can ?not|could not|can't) (?:be )?(?:exclude\w*|rule\w* out|entirely exclude\w*)|\bnot ruled? out\b|\brule out\b|\br/o\b"
    r"|\bpossibl[ey]\b|\bmay\b|\bmight\b|\bcould\b|\bquestion(?:able|ed| of)?\b|\bsuspicious\b|\bsuspect\w*|\bsuspicion\b"
    r"|\bconcern(?:ing)? for\b|\bworrisome\b|\bsuggest\w*|\bconsider\w*|\bdifferential\b|\bversus\b|\bvs\.?(?=\s)|\bequivocal\b"
    r"|\bindeterminate\b|\buncertain\b|\bpresum\w*|\bfavou?r\w*|\b(?:evaluat\w*|assess\w*) (?:for|of)\b|\?"
)
_UNC_POST = re.compile(
    r"\b(?:is |are |be )?(?:not|cannot be|can not be) (?:entirely |completely )?(?:excluded|ruled out)\b"
    r"|\b(?:is|are) (?:possible|suspected|questioned|not excluded)\b|\?"
)
_NEG_PRE = re.compile(
    r"\bno\b|\bnot\b|\bwithout\b|\bnegative for\b|\bfree of\b|\babsence of\b|\bresolution of\b|\bresolved\b|\bnor\b|\bneither\b"
    r"|\bclear of\b|\bexclude[sd]?\b|\bnone\b"
)
_NEG_POST = re.compile(
    r"\b(?:is |are |was |were |has been |have been )?(?:not|no longer) (?:\w+ )?(?:seen|identified|present|visualized|evident|demonstrated"
    r"|appreciated|noted|detected|visible|apparent)\b|\b(?:has |have )?(?:resolved|cleared|disappeared)\b|\b(?:is |are )?absent\b"
    r"|\b(?:is |are )?(?:now )?gone\b"
)
_BREAK = re.compile(
    r"\b(?:but|however|although|though|except|aside|apart|other than|besides|whereas|while|which|yet|otherwise)\b|,\s*(?:the|there)\b"
    r"|\b(?:seen|noted|identified|demonstrated|present)\s*,"  # "no effusion seen, dense nodule ..." closes the list
)
# Finite verbs only: participles ("identified mass lesion") are often adjectives inside a negated list.
_CLAUSE_VERB = re.compile(r"\b(?:is|are|was|were|has|have|had|appears?|remains?|shows?|persists?)\b")
_SENTENCE = re.compile(r"(?<=[.!;])\s+|\n+")
_WORD = re.compile(r"[a-z0-9']+")


def split_sentences(text: str) -> list[str]:
    """Lower-cased sentences; the IU de-identification token ``XXXX`` becomes a plain word, ``x-XXXX`` becomes ``x-ray``."""
    text = re.sub(r"x-XXXX", "x-ray", text or "", flags=re.IGNORECASE)
    text = text.replace("XXXX", "xxxx").lower()
    return [s.strip() for s in _SENTENCE.split(text) if s and s.strip()]


def _spans(pattern: re.Pattern[str], text: str) -> list[tuple[int, int]]:
    return [m.span() for m in pattern.finditer(text)]


def _overlaps(a: tuple[int, int], spans: Iterable[tuple[int, int]]) -> bool:
    return any(a[0] < b[1] and b[0] < a[1] for b in spans)


def _in_scope(gap: str, window: int) -> bool:
    """A cue reaches a mention across ``gap`` when it is short and holds no scope breaker."""
    return len(_WORD.findall(gap)) <= window and not _BREAK.search(gap) and not _CLAUSE_VERB.search(gap)


def _reaches(cues: list[tuple[int, int]], span: tuple[int, int], sentence: str, before: int, after: int) -> bool:
    """Whether any cue lies before (within ``before`` words), after (within ``after``) or inside ``span``."""
    start, end = span
    for c0, c1 in cues:
        if c1 <= start and before and _in_scope(sentence[c1:start], before):
            return True
        if c0 >= end and after and _in_scope(sentence[end:c0], after):
            return True
        if c0 >= start and c1 <= end:
            return True
    return False


def _sentence_mentions(sentence: str) -> list[tuple[str, float]]:
    """(label, state) for every finding mention in one lower-cased sentence."""
    matches = [(rule, m.span()) for rule in RULES for m in rule.pattern.finditer(sentence)]
    if not matches:
        return []
    masked = _PSEUDO.sub(lambda m: "_" * len(m.group()), sentence)
    unc_pre, unc_post = _spans(_UNC_PRE, masked), _spans(_UNC_POST, masked)
    masked_unc = masked
    for a, b in unc_pre + unc_post:  # "cannot exclude" must not read as a negation
        masked_unc = masked_unc[:a] + "_" * (b - a) + masked_unc[b:]
    neg_pre, neg_post = _spans(_NEG_PRE, masked_unc), _spans(_NEG_POST, masked_unc)
    fixed: dict[str, list[tuple[int, int]]] = {}
    for rule, span in matches:
        if rule.state != POSITIVE:
            fixed.setdefault(rule.label, []).append(span)
    found: list[tuple[str, float]] = []
    for rule, span in matches:
        if rule.state != POSITIVE:
            found.append((rule.label, rule.state))
        elif _overlaps(span, fixed.get(rule.label, ())):
            continue  # "heart is not enlarged" was already read as a negative phrase
        elif _reaches(neg_pre, span, masked_unc, PRE_WINDOW, 0) or _reaches(neg_post, span, masked_unc, 0, POST_WINDOW):
            found.append((rule.label, NEGATIVE))
        elif _reaches(unc_pre, span, masked, UNC_WINDOW, 0) or _reaches(unc_post, span, masked, 0, UNC_WINDOW):
            found.append((rule.label, UNCERTAIN))
        else:
            found.append((rule.label, POSITIVE))
    return found


def _combine(states: list[float]) -> float:
    if POSITIVE in states:
        return POSITIVE
    if UNCERTAIN in states:
        return UNCERTAIN
    return NEGATIVE if states else NAN


def label_report(text: str) -> dict[str, float]:
    """Label one report: {REPORT_LABELS name: 1.0 / 0.0 / -1.0 / NaN}."""
    per_label: dict[str, list[float]] = {name: [] for name in NIH_LABELS}
    normal_language = False
    for sentence in split_sentences(text):
        for label, state in _sentence_mentions(sentence):
            per_label[label].append(state)
        normal_language = normal_language or bool(_NORMAL_LANGUAGE.search(sentence))
    out = {name: _combine(states) for name, states in per_label.items()}
    out[NO_FINDING] = _no_finding(list(out.values()), normal_language)
    return out


def _no_finding(values: list[float], normal_language: bool) -> float:
    if POSITIVE in values:
        return NEGATIVE
    if UNCERTAIN in values:
        return UNCERTAIN
    if normal_language or sum(v == NEGATIVE for v in values) >= 2:
        return POSITIVE
    return NAN


def label_reports(texts: Iterable[str]) -> np.ndarray:
    """(N, 15) float32 labels, columns in REPORT_LABELS order."""
    rows = [[labels[name] for name in REPORT_LABELS] for labels in map(label_report, texts)]
    return np.asarray(rows, dtype=np.float32).reshape(-1, len(REPORT_LABELS))


def rules_fingerprint() -> str:
    """sha256 of every rule, cue pattern and window: what the held-out evaluation was measured with."""
    import hashlib

    parts = [f"{r.label}|{r.pattern.pattern}|{r.state}" for r in RULES]
    cues = (_NORMAL_LANGUAGE, _PSEUDO, _UNC_PRE, _UNC_POST, _NEG_PRE, _NEG_POST, _BREAK, _CLAUSE_VERB, _SENTENCE)
    parts += [c.pattern for c in cues] + [str(w) for w in (PRE_WINDOW, POST_WINDOW, UNC_WINDOW)]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()
