from metabert_tf import FewShotClassifier

texts = ["a gripping, beautifully shot film", "the plot is a delight from start to end",
         "dull, slow and far too long", "I walked out after twenty minutes"]
labels = ["positive", "positive", "negative", "negative"]

clf = FewShotClassifier.from_pretrained("minilm-l6")  # the bundled offline MiniLM
clf.fit(texts, labels, epochs=10, batch_size=4, head_init="prototypes", progress=False)
print(clf.predict(["what a wonderful story", "a total waste of time"]))
print(clf.predict_proba(["what a wonderful story"]))  # columns in the order of clf.labels
clf.save("my_classifier")  # FewShotClassifier.from_pretrained("my_classifier") reads it back
