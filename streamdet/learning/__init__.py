"""Learning a camera's normal: footage in, a calibrated checkpoint out.

``videos`` decodes video files to grey clips (light: no torch), ``footage`` gathers them
(files, a live ring), ``workflow`` learns from them (hold out, train, calibrate, health
baseline, save), ``saved`` reads a checkpoint back, ``health`` is the camera's learned normal
look. Nothing is re-exported here, so that importing ``health`` (pure numpy, for the alert
stage) does not import torch and the models.
"""
