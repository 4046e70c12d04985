"""emulator/line"""
