"""Compare runs: overlaid curves per loss term and eval metric, final metrics, config differences."""
import pandas as pd
import streamlit as st

from kd_analysis.plots.runs import metric_curves
from kd_analysis.runs import RunStore, reconcile
from kd_analysis.training.progress import config_diff, curves, final_table, metric_names, reference_groups

store = RunStore()
reconcile(store)
st.title("Compare runs")
runs = store.list(kind="train")
if not runs:
    st.info("No runs yet. Start one on the Distillation runs page, or regenerate the reference runs with "
            "`python -m kd_analysis runs make-reference`.", icon=":material/info:")
    st.stop()
labels = {r.run_id: f"{r.name or r.run_id} ({r.state})" for r in runs}
presets = reference_groups([r.run_id for r in runs if r.reference])
preset = st.radio("Start from", list(presets) + ["your runs"], horizontal=True,
                  help="reference runs shipped with the demo, grouped by the question they answer")
own = [r.run_id for r in runs if not r.reference]
default = presets.get(preset) or own[:4] or [r.run_id for r in runs[:3]]
chosen = st.multiselect("Runs", list(labels), default=default, format_func=labels.get, key=f"chosen_{preset}")
if not chosen:
    st.info("Choose at least one run.", icon=":material/info:")
    st.stop()

st.subheader("Final metrics")
table = pd.DataFrame(final_table(store, chosen))
st.dataframe(table, hide_index=True, width="stretch")
st.download_button("Final metrics (CSV)", table.to_csv(index=False), "runs_final_metrics.csv", "text/csv")
with_records = [r for r in chosen if (store.root / r / "predictions.jsonl").is_file()]
if with_records:
    st.page_link("pages/error_analysis.py", label="Analyse the errors of this run", icon=":material/rule:",
                 query_params={"run": with_records[0]})

names = metric_names(store, chosen)
pick = st.multiselect("Curves", names, default=[n for n in names if n in ("loss", "eval_accuracy", "eval_exact_match")]
                      or names[:2])
cols = st.columns(2)
for i, metric in enumerate(pick):
    cols[i % 2].plotly_chart(metric_curves(curves(store, chosen, metric), metric), width="stretch",
                             config={"toImageButtonOptions": {"format": "png", "filename": metric}})
if pick:
    long = pd.DataFrame([{"run": label, "metric": m, "step": x, "value": y}
                         for m in pick for label, (xs, ys) in curves(store, chosen, m).items()
                         for x, y in zip(xs, ys)])
    st.download_button("Curves (CSV)", long.to_csv(index=False), "runs_curves.csv", "text/csv")

st.subheader("Config differences")
diff = config_diff(store, chosen)
if diff:
    st.dataframe(pd.DataFrame(diff), hide_index=True, width="stretch")
else:
    st.caption("The chosen runs share every setting.")
