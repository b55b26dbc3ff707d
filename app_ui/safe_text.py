"""Text from outside the app (data files, config files, run folders, model names, paths, tokenizers, error
messages) shown literally, never read as Markdown.

Most Streamlit text renders Markdown: st.markdown / st.caption / st.write of a string, st.info / warning / error /
success, st.title / header / subheader, st.metric label, value and delta, the labels of widgets, buttons,
expanders, st.status and st.spinner, st.progress text, and st.radio options. A choice `[click](javascript:...)`
would become a link there, `![x](http://host/x.png)` a remote image, `$x$` LaTeX and `:red[x]` coloured text. Put
such a value through `md` (or `code` inside a code span) before it goes into one of those calls; our own Markdown
around it (bold labels and so on) stays as it is.

Plain-text places need nothing: st.selectbox and st.multiselect options, st.text_input / st.text_area values,
st.dataframe, st.table, st.code, st.text, st.json. HTML the app builds escapes its values with `html.escape`
(kd_analysis/plots: token heatmaps and figure labels).
"""

from __future__ import annotations

import re
from typing import Any

# Every character CommonMark, GitHub-flavoured Markdown or Streamlit's extensions give a meaning to: emphasis,
# code, links and images, headings, lists, block quotes, tables, strikethrough, HTML and autolinks, entities,
# setext underlines, LaTeX ($), and the :directive[...] / :shortcode: syntax. A backslash before any ASCII
# punctuation character renders that character as itself.
_SPECIAL = re.compile(r"([\\`*_\[\](){}<>#+\-.!|~$:=&])")


def md(text: Any) -> str:
    """`text` (anything; str() is taken) as Markdown source that renders exactly that text."""
    return _SPECIAL.sub(r"\\\1", str(text))


def code(text: Any) -> str:
    """`text` as a Markdown code span (monospace, literal), however many backticks it holds."""
    s = " ".join(str(text).splitlines())
    runs = [len(r) for r in re.findall(r"`+", s)]
    fence = "`" * (max(runs, default=0) + 1)
    # A span that starts or ends with a backtick, or with spaces on both sides, gets one padding space per side,
    # which Markdown strips again.
    pad = " " if runs or (s.startswith(" ") and s.endswith(" ") and s.strip()) else ""
    return f"{fence}{pad}{s}{pad}{fence}" if s else ""
