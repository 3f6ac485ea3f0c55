"""The MPPS SCP: the ultrasound machines report what they perform (DICOM PS3.4 annex F)."""
