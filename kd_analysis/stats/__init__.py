"""Every interval and test kd-lens reports, in one place: proportions with Wilson intervals (`intervals`), exact
McNemar, Benjamini-Hochberg and the paired difference of two rates (`significance`), and paired comparisons of
runs over examples and seeds (`paired`). Numbers in, numbers out: no runs, no frames."""
