"""radclip.runtime"""
