"""Streamlit helpers shared by app.py and pages/: session state, the sidebar, cached models and data.

Only UI glue lives here; every computation is in kd_analysis (which never imports streamlit).
"""
