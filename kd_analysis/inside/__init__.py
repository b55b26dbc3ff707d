"""Inside the pair: where in the network a student departs from its teacher.

Three views over the same examples: the logit lens of both models side by side (`lens`), the similarity of
their layers' representations (linear CKA, `cka`), and their attention heads matched one to one (`heads`);
`report` computes all three in one pass over the examples. Similarity is not causation: these views say where
the two models' internals differ, not why an answer is wrong."""
