"""lorascope: LoRA vs full fine-tuning under the microscope.

Fine-tunes text classifiers with LoRA and full fine-tuning, measures how far each moves the
model's layer-wise representations from the base model (CKA, cosine, with honest statistics),
and measures what serving LoRA adapters separately costs.
"""

__version__ = "0.1.0"
