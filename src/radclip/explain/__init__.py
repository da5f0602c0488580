"""radclip.explain"""
