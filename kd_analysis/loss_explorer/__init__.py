"""The loss explorers: every loss on a real teacher/student pair's outputs, the toy fit over ordered classes, and the AB-divergence plane. Analysis on top of the losses and the models."""
