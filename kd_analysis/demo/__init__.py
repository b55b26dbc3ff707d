"""The demo: the reference runs' plans (what `runs make-reference` trains and what cached_runs/ holds) and the story the Summary page tells from them. Above every method and analysis it uses."""
