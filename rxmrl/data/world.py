"""The small world of the embedded TinyStories-style generator: who, what, where, and how they feel.

Words are chosen from the vocabulary a three-year-old knows (as TinyStories does), so a small model can
learn the language quickly and spend its capacity on memory. Every list holds distinct single words or
short phrases that never contain one another as whole words, so a fact like "red" is unambiguous.
"""

from __future__ import annotations

GIRLS = (
    "Lily", "Mia", "Sue", "Anna", "Lucy", "Emma", "Zoe", "Ella", "Amy", "Kate", "Rose", "Ava",
    "Molly", "Sara", "Jenny", "Daisy", "Ruby", "Grace", "Nora", "Ellie", "Chloe", "Hannah", "Sophie", "Ivy",
)
BOYS = (
    "Tom", "Ben", "Max", "Sam", "Tim", "Jack", "Leo", "Jake", "Finn", "Noah", "Luke", "Dan",
    "Bob", "Joe", "Timmy", "Billy", "Oscar", "Theo", "Harry", "Ollie", "Peter", "Henry", "Adam", "Eli",
)
PET_NAMES = (
    "Spot", "Fluffy", "Buddy", "Coco", "Pip", "Rex", "Bella", "Sunny", "Tiny", "Muffin", "Pepper",
    "Bingo", "Ziggy", "Honey", "Biscuit", "Bubbles", "Peanut", "Shadow", "Snowy", "Rusty",
)
ANIMALS = (
    "dog", "cat", "bunny", "bird", "frog", "duck", "puppy", "kitten", "owl", "fox", "bear", "squirrel",
    "turtle", "mouse", "pony", "lamb", "goat", "pig", "hen", "deer",
)
ANIMAL_ADJECTIVES = ("friendly", "little", "fluffy", "tiny", "funny", "spotted", "furry", "gentle", "playful", "small")
TOYS = (
    "ball", "kite", "doll", "teddy bear", "toy car", "truck", "boat", "drum", "puzzle", "yo-yo",
    "robot", "train", "balloon", "whistle", "jump rope", "spinning top", "toy plane", "puppet",
)
COLOURS = (
    "red", "blue", "green", "yellow", "pink", "purple", "orange", "white", "black", "brown", "gold", "silver",
)
PLACES = (
    "park", "beach", "forest", "garden", "farm", "lake", "hill", "river", "zoo", "meadow", "school",
    "library", "playground", "market", "pond", "barn", "castle", "village", "field", "cave",
)
SPOTS = (
    "big tree", "old bench", "slide", "rock", "wooden bridge", "tall fence", "flower bed",
    "bush", "swing", "sand box", "shed", "tent", "oak tree", "stone wall", "door mat", "bed",
)
FOUND_THINGS = (
    "shell", "feather", "stone", "leaf", "button", "ribbon", "key", "coin", "marble", "flower", "stick",
    "cup", "hat", "sock", "mitten", "bell", "crayon", "spoon", "box", "star",
)
FOODS = (
    "apple", "cookie", "sandwich", "banana", "cake", "pie", "carrot", "waffle", "pear", "melon",
    "cupcake", "pancake", "grape", "cherry", "peach", "bun", "plum", "ice cream", "pizza", "lollipop",
)
GAMES = (
    "hide and seek", "tag", "catch", "leapfrog", "tea party", "treasure hunt", "follow the leader",
    "hopscotch", "pretend pirates", "fetch", "a guessing game", "peekaboo",
)
FEELINGS = ("happy", "sad", "scared", "excited", "proud", "sleepy", "surprised", "brave", "calm", "curious",
            "shy", "glad", "upset", "bored", "silly", "grumpy")
WEATHER = ("rain", "snow", "get windy", "get dark", "thunder", "get cold")
HELPERS = ("mom", "dad", "grandma", "grandpa", "big sister", "big brother", "aunt", "teacher")
SONGS = ("a loud song", "a quiet song", "a bedtime song", "a song about the sun", "a song about the moon",
         "a song about stars", "a song about rain", "a song about frogs")
HOUSES = ("small", "big", "little", "cozy", "old", "new", "tall", "warm")
