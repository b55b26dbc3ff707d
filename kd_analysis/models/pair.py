"""Can this student learn from this teacher, and with which losses? Said plainly, before any run starts."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from kd_analysis.models.loading import LoadedModel

# What each loss needs from a pair. Every registered logit loss (kd_analysis.losses.LOSSES) compares output
# distributions row by row, so both models must produce the same output space; text-level targets (CE on labels,
# rationales, teacher generations) need nothing more.
TEXT_TARGETS = {
    "ce": ("labels", "cross-entropy on gold labels"),
    "rationale": ("text", "rationale targets (text)"),
    "sequence_kd": ("text", "teacher outputs as text targets"),
}


def loss_needs() -> dict[str, tuple[str, str]]:
    """name -> (what it needs, title), logit losses read from the registry so a new loss appears here too."""
    from kd_analysis.losses import LOSSES

    needs = {"ce": TEXT_TARGETS["ce"]}
    needs.update(
        {name: ("any_vocabulary" if spec.cross_vocab else "same_outputs", spec.title) for name, spec in LOSSES.items()}
    )
    needs.update({k: v for k, v in TEXT_TARGETS.items() if k != "ce"})
    return needs


@dataclass
class PairReport:
    same_tokenizer: bool
    vocab_overlap: float  # share of the student's tokens with the same id in the teacher's vocabulary
    teacher_outputs: int
    student_outputs: int
    teacher_tokenizer_size: int
    student_tokenizer_size: int
    output_space: str  # "choices" | "labels" | "vocabulary" | "mismatch"
    comparable: bool  # teacher and student distributions live in the same space (logit losses apply)
    aligned_outputs: int | None  # compare over this many leading columns (None: all, or per-example choices)
    losses: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def applicable(self) -> list[str]:
        return [k for k, v in self.losses.items() if v["applies"]]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["applicable"] = self.applicable()
        return d


def _vocab_overlap(t_tok: Any, s_tok: Any) -> tuple[bool, float]:
    if t_tok is s_tok:
        return True, 1.0
    tv, sv = t_tok.get_vocab(), s_tok.get_vocab()
    same_ids = sum(1 for tok, i in sv.items() if tv.get(tok) == i)
    specials_same = all(
        getattr(t_tok, a, None) == getattr(s_tok, a, None)
        for a in ("pad_token_id", "eos_token_id", "bos_token_id", "unk_token_id")
    )
    overlap = same_ids / max(len(sv), 1)
    return (tv == sv and specials_same), overlap


def check_pair(teacher: LoadedModel, student: LoadedModel) -> PairReport:
    same_tok, overlap = _vocab_overlap(teacher.tokenizer, student.tokenizer)
    t_out, s_out = teacher.output_size(), student.output_size()
    notes: list[str] = []
    aligned: int | None = None
    if teacher.task != student.task:
        space = "mismatch"
        notes.append(
            f"Tasks differ (teacher {teacher.task}, student {student.task}): output distributions are not comparable."
        )
    elif teacher.task == "multiple_choice":
        space = "choices"  # one score per choice: distributions over the same choices, whatever the tokenizers
        notes.append("Both score the same choices, so choice distributions compare directly (any tokenizers).")
    elif teacher.task == "classification":
        space = "labels"
        if t_out == s_out:
            aligned = t_out
        else:
            notes.append(f"Teacher has {t_out} labels, student {s_out}: logit losses need the same label set.")
    else:
        space = "vocabulary"
        tok_len = max(len(teacher.tokenizer), len(student.tokenizer))
        if not same_tok:
            notes.append(
                f"Tokenizers differ ({overlap:.0%} of the student's tokens have the same id in the "
                f"teacher's vocabulary): token-level logit losses do not apply; ULD (sorted probabilities) "
                f"does, or text-level targets."
            )
        elif t_out == s_out:
            aligned = t_out
        elif min(t_out, s_out) >= tok_len:
            aligned = min(t_out, s_out)
            notes.append(
                f"Same tokenizer ({tok_len} tokens) but padded output sizes {t_out} vs {s_out}: logits are "
                f"compared over the first {aligned} columns; the cut columns are padding, no real token "
                f"is lost."
            )
        else:
            notes.append(
                f"Output sizes {t_out} vs {s_out} and the tokenizer has {tok_len} tokens: some real "
                f"tokens have no logit in one model, so logit losses do not apply."
            )
    comparable = space == "choices" or aligned is not None
    losses: dict[str, dict[str, Any]] = {}
    for name, (need, title) in loss_needs().items():
        if need == "same_outputs":
            ok = comparable
            why = (
                ("same output space" + (f" ({space})" if ok else ""))
                if ok
                else "needs teacher and student outputs over the same classes/vocabulary"
            )
        elif need == "any_vocabulary":  # ULD: same outputs, or two language models with their own tokenizers
            ok = comparable or (space == "vocabulary" and teacher.head == "lm" and student.head == "lm")
            why = (
                "compares sorted probabilities: works across tokenizers, answer positions aligned by index"
                if ok and not comparable
                else ("same output space" if ok else "needs two language models or the same output space")
            )
        elif need == "text":
            ok = teacher.head in ("lm", "seq2seq") or student.head in ("lm", "seq2seq") or teacher.task == student.task
            why = "works across tokenizers (targets are text)" if ok else "needs a generative model"
        else:
            ok, why = True, "needs only gold labels"
        losses[name] = {"applies": bool(ok), "reason": why, "title": title}
    return PairReport(
        same_tokenizer=same_tok,
        vocab_overlap=round(overlap, 4),
        teacher_outputs=t_out,
        student_outputs=s_out,
        teacher_tokenizer_size=len(teacher.tokenizer),
        student_tokenizer_size=len(student.tokenizer),
        output_space=space,
        comparable=comparable,
        aligned_outputs=aligned,
        losses=losses,
        notes=notes,
    )
