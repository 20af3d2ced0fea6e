"""The app's shared machinery: settings, the model registry, uploads, sessions, checked inputs and the training job."""
