"""radclip.engine"""
