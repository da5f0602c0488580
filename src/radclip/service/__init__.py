"""radclip.service"""
