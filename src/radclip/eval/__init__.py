"""radclip.eval"""
