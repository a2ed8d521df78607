"""The optimisation (layer 4): prompt syntax and loss math as pure functions, cutouts, schedules, the objective
(losses from an image and a step), the run state, and the one loop."""
