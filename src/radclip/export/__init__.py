"""radclip.export"""
