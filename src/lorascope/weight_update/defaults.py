"""Intruder-dimension defaults: the top k = 10 singular vectors of each fine-tuned matrix, threshold ε = 0.5.

They are the values PEFT's ``reduce_intruder_dimension`` uses for the definition of Shuttleworth
et al. (2025); kept free of imports so that configs can name them without loading numpy.
"""

DEFAULT_TOP_K = 10
DEFAULT_EPSILON = 0.5
